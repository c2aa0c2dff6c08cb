"""Generated package; see ``shuyu_client._proto``."""
