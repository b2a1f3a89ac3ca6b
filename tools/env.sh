# Source this file to run the plain `caffe` binary with our Python layers:
#   source tools/env.sh && caffe train -solver prototxt/wsddn/solver.prototxt
# (`caffe-mlic caffe ...` does the same without touching your shell.)
_cm_repo=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
_cm_py=${CAFFE_MLIC_VENV:-$_cm_repo/.venv}/bin/python
eval "$("$_cm_py" - <<'PY'
import shlex
from caffe_mlic.caffe import env as caffe_env
env = caffe_env.binary_environment()
for key in ('PYTHONPATH', 'LD_LIBRARY_PATH', 'CAFFE_MLIC_PYTHON'):
    print('export %s=%s' % (key, shlex.quote(env[key])))
print('export PATH=%s:"$PATH"' % shlex.quote(__import__('os').path.dirname(caffe_env.caffe_binary())))
PY
)"
unset _cm_repo _cm_py
