"""The dialects `mlapi serve` speaks, one module each with a `DIALECT`
(mlapi.web.dialect.Dialect). They are found through the `mlapi.dialects` entry-point group
(pyproject.toml), as a package of one's own adds one: see mlapi.web.dialect."""
