"""edgeplace.cluster_cli without a cluster: bad inputs of `apply-isolation` get a message and exit 3."""

from __future__ import annotations

import socket

import yaml

from edgeplace.cli import main


def _kubeconfig(tmp_path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": server}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    return str(path)


def test_apply_isolation_with_a_bad_kubeconfig(tmp_path, capsys):
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: [a kubeconfig")
    assert main(["apply-isolation", "--kubeconfig", str(bad)]) == 3
    assert f"{bad}" in capsys.readouterr().err


def test_apply_isolation_with_an_unreachable_api_server(tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["apply-isolation", "--kubeconfig", _kubeconfig(tmp_path, f"http://127.0.0.1:{port}")]) == 3
    assert "cannot reach the API server" in capsys.readouterr().err


def test_apply_isolation_with_a_bad_site_config(tmp_path, capsys):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"tenants": [{"id": "t", "isolation": {"dedicated_nodes": "maybe"}}]}))
    assert main(["apply-isolation", "--site-config", str(site), "--kubeconfig", _kubeconfig(tmp_path, "http://127.0.0.1:1")]) == 3
    err = capsys.readouterr().err
    assert "site.yaml" in err and "tenants[0].isolation.dedicated_nodes" in err
