"""Browser tests of the night-patrol console in headless Chromium."""
