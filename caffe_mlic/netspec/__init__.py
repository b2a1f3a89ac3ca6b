"""NetSpec generators for the MLIC-KD-WSD nets (see mlic.py) and their solvers."""
from caffe_mlic.netspec.mlic import (NETS, MlicConfig, kd_stage1, kd_stage2, student_baseline,
                                     student_deploy, wsddn_deploy, wsddn_train)

__all__ = ['NETS', 'MlicConfig', 'kd_stage1', 'kd_stage2', 'student_baseline', 'student_deploy',
           'wsddn_deploy', 'wsddn_train']
