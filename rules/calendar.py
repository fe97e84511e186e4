"""Daily wall-clock windows (night, shifts) in a named time zone, DST-correct."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")

# "22:00-07:00"; an en dash is accepted because that is how people write it.
_WINDOW = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)\s*[-–]\s*([01]\d|2[0-3]):([0-5]\d)\s*$")


@dataclass(frozen=True, slots=True)
class DailyWindow:
    """A window of local wall-clock time that repeats every day; it may cross midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> DailyWindow:
        """Parse ``"HH:MM-HH:MM"``; raise ValueError saying what was expected."""
        match = _WINDOW.match(text)
        if match is None:
            raise ValueError(f"expected a window like '22:00-07:00', got {text!r}")
        sh, sm, eh, em = (int(g) for g in match.groups())
        if (sh, sm) == (eh, em):
            raise ValueError(f"window {text!r} is empty: start and end are the same time")
        return cls(time(sh, sm), time(eh, em))

    def contains(self, at: datetime, tz: ZoneInfo = STOCKHOLM) -> bool:
        """Whether the instant ``at`` falls in the window, judged on ``tz``'s wall clock."""
        if at.tzinfo is None:
            raise ValueError("a window can only judge a timezone-aware instant")
        # Converting the instant to local wall time is what makes DST right: the
        # night of a switch is simply an hour shorter or longer in real time.
        local = at.astimezone(tz).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"
