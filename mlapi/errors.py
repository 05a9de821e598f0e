"""Errors that carry the HTTP status a server should answer with."""


class MlapiError(Exception):
    """A failure caused by the caller's input or set-up, with a message meant for people."""

    status = 400
    code: int | None = None  # a dialect's own error code, where it has one (CompreFace)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class OptionError(MlapiError):
    status = 400


class UnknownModel(MlapiError):
    status = 400


class ModelMissing(MlapiError):
    """A model's files are not in the cache; nothing is downloaded implicitly."""

    status = 503
