"""Run `caffe train` through the binary and read its losses back; see how
real Caffe ends some work in a forked child."""
import os
import re
import subprocess

from caffe_mlic.caffe import env as caffe_env
from caffe_mlic.errors import RunError

_ITER_LOSS = re.compile(r'Iteration (\d+)(?: \([^)]*\))?, loss = ([-+0-9.eE]+|nan|inf|-inf)')


def parse_losses(log_text):
    """[(iteration, loss)] from a caffe training log, in order."""
    return [(int(it), float(loss)) for it, loss in _ITER_LOSS.findall(log_text)]


class CaffeTrainError(RunError):
    def __init__(self, returncode, log):
        tail = '\n'.join(log.strip().splitlines()[-25:])
        super().__init__('caffe train exited with %d; last lines:\n%s' % (returncode, tail))
        self.returncode, self.log = returncode, log


def caffe_train(solver, cwd=None, extra_args=(), timeout=None, env=None):
    """Run `caffe train -solver SOLVER` (the real binary); return (losses, log).

    GLOG goes to stderr at INFO level so the per-iteration losses are logged.
    """
    run_env = caffe_env.binary_environment(base=env)
    run_env['GLOG_logtostderr'] = '1'
    run_env['GLOG_minloglevel'] = '0'
    cmd = [caffe_env.caffe_binary(), 'train', '-solver', os.fspath(solver)] + list(extra_args)
    res = subprocess.run(cmd, cwd=cwd, env=run_env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if res.returncode != 0:
        raise CaffeTrainError(res.returncode, res.stdout)
    return parse_losses(res.stdout), res.stdout


def fate_in_child(work, seconds=60):
    """How ``work()`` (pycaffe calls that Caffe may abort) ends in a forked
    child: 'ok', the signal's name (SIGABRT: a CHECK failed), or 'exit N'."""
    import faulthandler
    import signal
    pid = os.fork()
    if pid == 0:                 # the child: Caffe may abort it
        try:
            signal.alarm(seconds)
            faulthandler.disable()      # (pytest's dumps every death to its own copy of stderr)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            work()
            os._exit(0)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return 'ok' if os.WEXITSTATUS(status) == 0 else 'exit %d' % os.WEXITSTATUS(status)
