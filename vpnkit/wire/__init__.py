"""
Pure wire formats: bytes to small frozen values and back.

Nothing in this package imports Twisted or touches the OS.  Every parser either
returns a value or raises a L{ParseError} subclass; callers count and drop.
"""

__all__ = [
    "ParseError",
    "TruncatedError",
    "ChecksumError",
    "MalformedError",
    "WithOptions",
]


class ParseError(ValueError):
    """
    Bytes that do not form a valid message of the expected format.
    """


class TruncatedError(ParseError):
    """
    Fewer bytes than the format (or its own length fields) require.
    """


class ChecksumError(ParseError):
    """
    A checksum that does not verify.
    """


class MalformedError(ParseError):
    """
    A field holds a value the format does not allow.
    """


class WithOptions:
    """
    For messages that carry a tuple C{options} of option dataclasses.
    """

    __slots__ = ()

    def option(self, kind):
        """
        The first option of class C{kind}, or C{None}.
        """
        for option in self.options:
            if type(option) is kind:
                return option
        return None

    def optionsOf(self, kind):
        """
        Every option of class C{kind}, in order.
        """
        return [option for option in self.options if type(option) is kind]
