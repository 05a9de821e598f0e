"""Every error mlapi raises for people to read, in one place, with the HTTP status a server
answers it with (each dialect renders them as its own error body). The comment after a
class names the room that raises it."""


class MlapiError(Exception):
    """A failure caused by the caller's input or set-up, with a message meant for people."""

    status = 400
    code: int | None = None  # a dialect's own error code, where it has one (CompreFace)
    retry_after: int | None = None  # seconds a client should wait (a 429's Retry-After)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


# -- a request's detectors and options (engine, detectors) --------------------------------
class OptionError(MlapiError):
    status = 400


class UnknownDetector(MlapiError):
    """A detector name nobody installed or imported (`-m`, `models=`)."""

    status = 400


# -- images and URLs ---------------------------------------------------------------------
class ImageError(MlapiError):  # images: the bytes are not a usable image; the message says why
    status = 400


class ImageTooLarge(ImageError):  # images: over the pixel limits, read from the header
    status = 413


class FetchRefused(MlapiError):  # fetch: a URL to a private address, or a bad answer
    status = 400


# -- models: the catalog, the cache, conversion (store/) -----------------------------------
class UnknownModel(MlapiError):  # store: no catalog model of that name
    status = 400


class ModelMissing(MlapiError):  # store: not in the cache; nothing is downloaded implicitly
    status = 409  # the server's state, not overload: retrying will not help until a pull


class FetchError(MlapiError):  # store.sources: pip, npm or a URL could not deliver
    status = 503


class ChecksumMismatch(MlapiError):  # store.sources: a file is not the one the catalog names
    status = 500


class ConvertError(MlapiError):  # store.convert: a conversion failed (tf2onnx's, if missing)
    status = 500


class NotCovered(ConvertError):  # store.tfjs_onnx: an operation the converter does not handle
    pass


class DlibFormatError(MlapiError):  # store.dlibnet: not the dlib network this reader knows
    status = 500


class ArtifactMismatch(MlapiError):  # store: a model made here has other bytes than listed
    status = 500


class BundledModel(MlapiError):  # store: a read-only bundled model cannot be removed
    status = 409


# -- people and keys ---------------------------------------------------------------------
class UserError(MlapiError):  # users: bad names, passwords, unknown users or keys
    status = 400


class AuthError(MlapiError):  # auth: missing or wrong credentials
    status = 401


class TextError(MlapiError):  # text: a name or field that is not valid text
    status = 400


class GalleryError(MlapiError):  # gallery, enroll: no usable face, unknown person
    status = 400


class NoFaceFound(GalleryError):  # enroll: the photo shows no face to learn
    pass


class DuplicateSample(GalleryError):  # enroll: the person already has this very sample
    status = 409


class UnknownPerson(GalleryError):  # gallery: no such person or sample to change
    pass


class UnknownSighting(GalleryError):  # sightings: no such sighting or cluster
    status = 404


class PlateError(MlapiError):  # stores: a known plate's bad name, plate or pattern
    status = 400


class UnknownPlate(PlateError):  # stores: no known plate of that name to remove
    status = 404


class PlateTaken(PlateError):  # stores: the plate is already known under another name
    status = 409


# -- commands ----------------------------------------------------------------------------
class StoreUnavailable(MlapiError):  # state: the database does not answer; retry shortly
    status = 503


class Stalled(StoreUnavailable):  # stores.database: no answer by the deadline (not a refusal)
    """Stopped, unreachable or overloaded, as opposed to refusing at once: calls fail fast
    until a probe gets an answer."""


class StreamError(MlapiError):  # stream: a source that cannot be opened
    status = 400


class RequestError(MlapiError):  # web: a request the server refuses, with its status
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TooManyLogins(MlapiError):  # web.auth: the login limiter refuses for `wait` seconds
    status = 429

    def __init__(self, wait: int) -> None:
        super().__init__("too many failed logins; try again later")
        self.retry_after = wait


# -- the ZoneMinder portal (dialects/mlapi_seed/events) ---------------------------------------
class ZoneMinderError(MlapiError):  # the portal, not the client, failed
    status = 502


class ZoneMinderTimeout(ZoneMinderError):  # no frame within --zm-event-timeout
    status = 504


class TooManyEvents(MlapiError):  # more of one user's event requests than --zm-events-per-user
    status = 429

    def __init__(self, message: str, wait: int) -> None:
        super().__init__(message)
        self.retry_after = wait


class RemoteError(MlapiError):  # client: a server's error answer, with its status
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
