from setuptools import find_packages, setup

# caffe_mlic/layers is a link to the top-level layers/ folder, so the module
# path prototxts use, "caffe_mlic.layers", is the same in a checkout, an
# editable install and a wheel (find_packages follows the link).
setup(
    name='caffe-mlic',
    version='0.1.0',
    description='MLIC-KD-WSD and ScasNet on stock Caffe: Python layers, NetSpec generators, tools',
    packages=find_packages(include=['caffe_mlic', 'caffe_mlic.*']),
    python_requires='>=3.9',
    # numpy, scipy, OpenCV (with contrib), numba, protobuf and tqdm come from
    # Debian (see tools/install_deps.sh); pycaffe is built against numpy 1.x,
    # so we never let pip resolve them (constraints.txt pins numpy<2 in the venv).
    install_requires=[],
    entry_points={'console_scripts': ['caffe-mlic = caffe_mlic.cli:main']},
)
