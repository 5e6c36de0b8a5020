"""The byte-level fast paths beside pynetdicom.

pynetdicom runs the associations; where its general machinery costs too much or trusts the peer too
much, these modules work on the bytes themselves: the Upper Layer PDUs (``upper_layer.py``), storage
associations served without pynetdicom (``direct_storage.py``), the indexed attributes read straight from
an encoded data set (``header.py``), worklist identifiers written straight to bytes
(``response_encoding.py``) and written beside the DUL, many PDUs a write (``pending_responses.py``).  Every use of
pynetdicom's private API, anywhere in the engine, goes through ``pynetdicom_private.py``, whose
declared list a unit test checks against the installed pynetdicom.
"""
