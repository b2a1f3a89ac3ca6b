"""The learning rate of a solver at an iteration, as Caffe's
SGDSolver::GetLearningRate computes it (every solver type uses it).

With base_lr, gamma, power, stepsize, stepvalue and max_iter from the solver,
at iteration it (the update that takes the weights from it to it + 1):

    fixed      base_lr
    step       base_lr * gamma ^ floor(it / stepsize)
    exp        base_lr * gamma ^ it
    inv        base_lr * (1 + gamma * it) ^ (-power)
    multistep  base_lr * gamma ^ (steps taken by it)
    poly       base_lr * (1 - it / max_iter) ^ power
    sigmoid    base_lr / (1 + exp(-gamma * (it - stepsize)))

multistep takes at most one step per iteration, at the first iteration at or
after the next stepvalue (so unsorted or repeated stepvalues count as Caffe
counts them). Computed in double precision; Caffe rounds the rate to float.
"""
import math

from caffe_mlic.errors import InputError, Problem

POLICIES = ('fixed', 'step', 'exp', 'inv', 'multistep', 'poly', 'sigmoid')


def lr_policy_problems(solver):
    """[(field, message)] for what Caffe would abort on: a missing or unknown
    policy, step without a stepsize > 0, a negative gamma."""
    policy = solver.lr_policy
    problems = []
    if not solver.HasField('lr_policy'):
        problems.append(('lr_policy', 'no lr_policy given (Caffe aborts without one); give one of %s'
                         % ', '.join(POLICIES)))
    elif policy not in POLICIES:
        problems.append(('lr_policy', 'unknown lr_policy %r; Caffe knows %s' % (policy, ', '.join(POLICIES))))
    if policy == 'step' and solver.stepsize <= 0:
        problems.append(('stepsize', 'lr_policy "step" needs stepsize > 0, got %d' % solver.stepsize))
    if policy in ('step', 'exp', 'inv', 'multistep') and solver.gamma < 0:
        problems.append(('gamma', 'lr_policy %r needs gamma >= 0, got %g' % (policy, solver.gamma)))
    if policy == 'poly' and solver.max_iter <= 0:
        problems.append(('max_iter', 'lr_policy "poly" needs max_iter > 0'))
    return problems


def check_lr_policy(solver, where='solver'):
    """InputError (naming ``where``) for the lr_policy_problems of ``solver``."""
    problems = lr_policy_problems(solver)
    if problems:
        raise InputError(problems=[Problem(where, None, field, p) for field, p in problems])


def multistep_count(stepvalues, iteration):
    """How many steps Caffe's multistep policy has taken by ``iteration``."""
    taken, last = 0, -1
    for value in stepvalues:
        at = max(value, last + 1)      # one step per iteration at most
        if at > iteration:
            break
        taken, last = taken + 1, at
    return taken


def learning_rate(solver, iteration):
    """The rate Caffe uses at ``iteration`` for SolverParameter ``solver``."""
    policy, base, it = solver.lr_policy, solver.base_lr, iteration
    gamma, power = solver.gamma, solver.power
    if policy == 'fixed':
        return base
    if policy == 'step':
        return base * gamma ** (it // solver.stepsize)
    if policy == 'exp':
        return base * gamma ** it
    if policy == 'inv':
        return base * (1 + gamma * it) ** (-power)
    if policy == 'multistep':
        return base * gamma ** multistep_count(solver.stepvalue, it)
    if policy == 'poly':
        return base * max(0.0, 1 - it / solver.max_iter) ** power
    if policy == 'sigmoid':
        exponent = -gamma * (it - solver.stepsize)
        return base / (1 + math.exp(exponent)) if exponent < 700 else 0.0
    check_lr_policy(solver)
    raise AssertionError(policy)
