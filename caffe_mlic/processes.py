"""Starting our helper processes (the data layers' workers, `proposals
--jobs`): one place for what a spawned child needs at its start."""
import signal


def start_without_sigint(proc):
    """Start ``proc`` (a multiprocessing Process) with SIGINT blocked across
    its fork and exec: the child keeps it blocked until it ignores SIGINT
    itself (a Ctrl-C while it imports would print a KeyboardInterrupt
    traceback), and ours stays pending, delivered when unblocked here.
    Multiprocessing's resource tracker is started first: starting it
    unblocks SIGINT."""
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
