"""Tests of the console's static pages that need no browser."""
