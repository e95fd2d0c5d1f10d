"""The test harness: labs, fake servers, helpers. Not shipped in the wheel."""
