"""Estimators of log p(x), objects apart from the model, registered by name."""

from lvm.estimators.registry import ESTIMATORS, create_estimator, list_estimators, register_estimator

__all__ = ["ESTIMATORS", "create_estimator", "list_estimators", "register_estimator"]
