"""One labelled image."""


class Datum:
    """An image path with its label, domain and class name (Dassl's ``Datum``).

    Read-only, so sampled subsets and relabelled copies can share items without surprises;
    compares by value, which keeps split round trips and subset comparisons simple.
    """

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath, label, domain=0, classname=""):
        if not isinstance(impath, str):
            raise TypeError(f"Datum impath must be a str, got {type(impath).__name__}")
        self._impath = impath
        self._label = int(label)
        self._domain = int(domain)
        self._classname = classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label

    @property
    def domain(self):
        return self._domain

    @property
    def classname(self):
        return self._classname

    def _key(self):
        return (self._impath, self._label, self._domain, self._classname)

    def __eq__(self, other):
        return isinstance(other, Datum) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return (
            f"Datum(impath={self._impath!r}, label={self._label}, "
            f"domain={self._domain}, classname={self._classname!r})"
        )
