"""Notification: turn stored findings into emails the support team reads, and deliver them.

``render`` builds the message (Jinja2 templates in ``templates/``), ``email`` delivers it over SMTP
and maps every failure to ``DeliveryError(transient=...)`` so the sender knows whether to retry.
"""
