"""The one exception type for mistakes a user can make (config, data, paths, runs)."""


class UserInputError(ValueError):
    """What the user asked for cannot be done; the message names the file, key or value and
    says what to do instead."""
