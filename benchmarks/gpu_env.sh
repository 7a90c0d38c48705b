# Sourced by the GPU scripts (gpu_session.sh, gpu_tests.sh, gpu_pack.sh) on a fresh machine: the
# wheels (wheels.sh), this package's entry points, the carried Triton cache and its settings.
#   source benchmarks/gpu_env.sh
source benchmarks/wheels.sh install
python3 -m pip install -q --no-deps --no-build-isolation -e .
[ -f .triton_cache.txz ] && tar xJf .triton_cache.txz
export PYTHONUNBUFFERED=1 MQARBENCH_DATA_DIR="$PWD/mqar_data" TRITON_CACHE_DIR="$PWD/.triton" \
  TRITON_CACHE_AUTOTUNING=1 FLA_CACHE_RESULTS=1
