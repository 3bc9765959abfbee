"""The archive layer: streamed, compressed, optionally age-encrypted, checksummed backup objects.

See ``docs/FORMAT.md`` for the on-disk format and :mod:`storagectl.archive.api` for the contract
with the backends. Import from the submodules (``archive.writer``, ``archive.reader``, ...): this
package stays empty so the CLI can import ``archive.progress`` without loading codecs at start-up.
"""
