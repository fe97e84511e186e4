"""SCAIP over SIP: a focused RFC 3261 subset for MESSAGE (parsing, transactions, transports).

See docs/sip.md for why this is our own small implementation and not a SIP library.
"""
