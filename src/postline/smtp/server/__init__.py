"""postline's SMTP servers (thin aiosmtpd handlers)."""
