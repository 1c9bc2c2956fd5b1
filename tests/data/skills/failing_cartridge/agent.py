from . import helpers  # noqa: F401  (imported first, so the failure leaves a submodule to clean up)

raise RuntimeError("the entrypoint broke on import")
