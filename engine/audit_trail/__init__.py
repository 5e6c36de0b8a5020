"""The ATNA audit trail (IHE ITI-20, DICOM PS3.15 Annex A.5): audit messages for what the engine does with
patient data and for security events, kept in a durable queue in the store and sent as syslog to an Audit
Record Repository.

``codes`` holds the coded values, ``message`` the XML of one message, ``events`` one builder per event
class (domain data in, message out: no SQL, no sockets), ``changes`` the builders fed from the rows the
engine already writes (domain events, operator actions), ``recorder`` what the adapters call,
``syslog`` the RFC 5424 / 5425 wire format and ``delivery`` the thread that sends the queue in order.
"""
