"""The night-patrol console and lock-audit view (issue 4), served by the API."""
