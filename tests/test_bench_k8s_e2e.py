"""bench/bench_k8s_e2e.py's command line: a bad --variants is refused before any cluster starts."""

from __future__ import annotations

import pytest

from bench import bench_k8s_e2e


def test_unknown_variants_are_refused_with_the_known_names(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_k8s_e2e.main(["--variants", "filter keeps the best, compact;no such wiring"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--variants: unknown ['no such wiring']" in err and "'steering at admission, extender for unplanned pods'" in err


def test_steering_variants_never_send_their_pods_to_the_extender():
    assert bench_k8s_e2e.STEER.pod_requests is None  # managedResources configured, not requested
    assert bench_k8s_e2e.Variant("managed", managed=True).pod_requests == {bench_k8s_e2e.MANAGED_RESOURCE: "1"}
