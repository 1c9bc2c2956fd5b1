"""A helper module of the greeter cartridge (imported as a submodule of its unique package)."""


def salutation(words: dict) -> str:
    return str(words["hello"])
