"""Hefestus: a self-healing companion for Zabbix."""

__version__ = "0.1.0"
