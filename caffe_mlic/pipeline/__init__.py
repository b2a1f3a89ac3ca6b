"""`caffe-mlic run CONFIG`: a method's stages in order, each recorded, so
that a run again skips what is done and reruns what a change invalidates
(stages)."""
