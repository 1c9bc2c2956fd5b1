"""The greeter ships a module named json: it must never replace the host's json."""

LABEL = "greetings"
