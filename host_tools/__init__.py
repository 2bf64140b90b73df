"""Host tools for clinics and technicians: the `tokentool` CLI and the library behind it."""
