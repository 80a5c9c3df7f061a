"""The plan layer: the release-communications plan, loaded from TOML with precise errors."""

from .loader import PlanError, load_plan
from .model import Communique, Location, Plan, Recipient, Release, StakeholderGroup

__all__ = ["Communique", "Location", "Plan", "PlanError", "Recipient", "Release", "StakeholderGroup", "load_plan"]
