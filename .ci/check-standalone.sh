#!/usr/bin/env bash
# The project stands alone: nothing under the repository may read the design
# folder beside it (../shared, /work/shared). Prose that names shared/REFERENCE.md
# as the source of a figure is fine (Markdown and comments without a path that
# code could open); a path a program could open is not.
# Prints each offending file:line and exits 1; exits 0 when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
# ../shared or /work/shared anywhere; "shared" as a path component built in code
# (Path(...) / "shared", os.path.join(..., "shared", ...)).
pattern="(\.\./|/work/)shared\b|[\"']shared[\"']\s*[/,)]|[/(]\s*[\"']shared[\"']"
if hits=$(git grep -nIE "$pattern" -- ':!*.md' ':!.ci/check-standalone.sh' ':!.ci/run'); then
  echo "$hits" | sed 's/^/reads outside the repository: /'
  echo "check-standalone: the tests and tools must use fixtures inside the repository (tests/data/), not ../shared" >&2
  exit 1
fi
echo "check-standalone: no file reads ../shared"
