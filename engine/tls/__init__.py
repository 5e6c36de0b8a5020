"""TLS for the engine's MLLP and HTTP listeners and its outbound MLLP links (Twisted's TLS over pyOpenSSL).

``files`` reads and checks the PEM files of a ``TlsConfig`` (shared with the DICOM side, which builds a
Python ``ssl.SSLContext`` from the same material); ``contexts`` turns them into OpenSSL contexts and
client connection creators; ``reloading`` keeps the current one and re-reads the files on SIGHUP or when
they change; ``listener`` wraps a protocol factory in TLS and reports refused handshakes; ``policy``
refuses plain listeners off loopback unless the config says ``tls: off``.
"""
