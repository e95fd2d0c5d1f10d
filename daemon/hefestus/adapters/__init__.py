"""The only modules that import third-party clients (pyzabbix, requests, ...).

Each adapter turns the client's data into Hefestus's typed objects and the
client's exceptions into :mod:`hefestus.errors`, so core code depends on
small protocols and never on a library.
"""
