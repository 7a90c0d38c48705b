#!/usr/bin/env bash
# The GPU wheels (mamba_ssm, causal_conv1d, flash-linear-attention, pydantic) for a device call.
#   bash benchmarks/wheels.sh pack     # here: .whl/*.whl -> .site.txz, unpacked and xz-compressed
#   source benchmarks/wheels.sh install  # there: into /tmp/site (or $SITE_DIR), on PYTHONPATH
# Wheels are zips of CUDA binaries; unpacked, without debug sections and xz-compressed they take
# 18 MB instead of 36 MB, which leaves room for the Triton cache within the 64 MB a call carries
# (with a sparse checkout that leaves the board's runs behind: docs/maintaining.md). Either form is used.
if [ "${1:-}" = pack ]; then  # (sourced scripts name install, so a caller's own $1 is never read)
  set -eu; rm -rf /tmp/site_build
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site_build \
    --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 --platform linux_x86_64 .whl/*.whl
  # the extensions' debug sections are 20 MB of the 105 MB (3.3 MB compressed); the code and the
  # CUDA fatbins stay. STRIP=0 keeps them.
  if [ "${STRIP:-1}" = 1 ] && command -v strip > /dev/null; then
    find /tmp/site_build -name '*.so' -exec strip --strip-debug {} + 2> /dev/null || true
  fi
  tar cf - -C /tmp/site_build . | xz -T0 -9 > .site.txz.tmp && mv .site.txz.tmp .site.txz
  ls -l .site.txz; exit 0
fi
site_dir=${SITE_DIR:-/tmp/site}
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --upgrade --target "$site_dir" .whl/*.whl
elif [ -f .site.txz ]; then
  mkdir -p "$site_dir" && tar xJf .site.txz -C "$site_dir"
fi
export PYTHONPATH="$site_dir${PYTHONPATH:+:$PYTHONPATH}"
