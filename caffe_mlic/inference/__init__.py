"""Running trained nets on images: the WSDDN teacher as a detector, the student
as a classifier (`caffe-mlic detect`, `caffe-mlic classify`)."""
