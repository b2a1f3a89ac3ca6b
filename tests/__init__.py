"""The test suite; its folders mirror the package (tests/data/ tests caffe_mlic/data/, ...)."""
import os

# the checkout's root
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
