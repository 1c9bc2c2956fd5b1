from .util import twice

RESULT = twice(21)
