"""The package's shape: no import cycles between its modules (lazy imports
inside functions count too: they are the design's dependencies), and the
test folders mirror the package's."""
import ast
import os

from tests import REPO


def import_graph():
    """{module: {caffe_mlic modules it imports}}, from the source."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(REPO, 'caffe_mlic'), followlinks=True):
        for name in files:
            if name.endswith('.py'):
                dotted = os.path.relpath(os.path.join(folder, name), REPO)[:-3].replace(os.sep, '.')
                modules[dotted[:-len('.__init__')] if dotted.endswith('.__init__') else dotted] = \
                    os.path.join(folder, name)
    graph = {}
    for module, path in modules.items():
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or '').startswith('caffe_mlic'):
                for alias in node.names:
                    full = node.module + '.' + alias.name
                    targets.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith('caffe_mlic'))
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycles_are_found_when_there_are_some():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': set()}) == []


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert 'caffe_mlic.layers.roi_pooling' in graph and 'caffe_mlic.data.datalist' in graph
    assert cycles(graph) == []


def test_every_package_folder_has_its_test_folder():
    packages = sorted(name for name in os.listdir(os.path.join(REPO, 'caffe_mlic'))
                      if os.path.isfile(os.path.join(REPO, 'caffe_mlic', name, '__init__.py')))
    untested = {'benchmarks', 'report'}     # benchmarks: `make bench`; report: tests/demos/
    missing = [p for p in packages if p not in untested and not os.path.isdir(os.path.join(REPO, 'tests', p))]
    assert missing == []
