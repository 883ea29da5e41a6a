"""The reasoning investigator: a language model that runs read-only lookups and writes an
assessment, inside budgets and outside the policy's reach."""

from soc_agent.investigator.loop import PROMPT_VERSION, ModelRun, run_investigator
from soc_agent.investigator.tools import LookupTool, read_only_tools

__all__ = ["PROMPT_VERSION", "LookupTool", "ModelRun", "read_only_tools", "run_investigator"]
