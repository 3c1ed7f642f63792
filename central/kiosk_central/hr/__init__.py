"""The HR web application (BKPSDM): login, review cases, recaps and reports, on Django."""
