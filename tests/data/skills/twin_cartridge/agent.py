from . import helpers

HELPER_VALUE = helpers.VALUE


def build(runtime: object) -> object:
    return HELPER_VALUE
