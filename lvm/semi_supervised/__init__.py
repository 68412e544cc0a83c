"""Semi-supervised VAEs: the M2 model of Kingma et al. (2014) and its Lightning training plan."""

from lvm.semi_supervised.m2 import M2Bound, M2Model
from lvm.semi_supervised.vae import SemiSupervisedVAE

__all__ = ["M2Bound", "M2Model", "SemiSupervisedVAE"]
