"""Hook protocols, decision values, and the hooks that ship with looplet."""

from .decisions import Allow, Ask, Block, Continue, Deny, InjectContext, Stop
from .protocols import (
    HOOK_METHODS,
    AfterStep,
    CheckDone,
    LoopHook,
    OnLoopEnd,
    PostDispatch,
    PreDispatch,
    PreLoop,
    PrePrompt,
    ShouldStop,
)
from .slots import HookSlots

__all__ = [
    "Allow",
    "Ask",
    "Block",
    "Continue",
    "Deny",
    "InjectContext",
    "Stop",
    "HOOK_METHODS",
    "AfterStep",
    "CheckDone",
    "LoopHook",
    "OnLoopEnd",
    "PostDispatch",
    "PreDispatch",
    "PreLoop",
    "PrePrompt",
    "ShouldStop",
    "HookSlots",
]
