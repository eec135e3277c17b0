"""clean: documents → documents (+ dropped, with reason).

normalise (one canonical form), mojibake (ftfy repair), filters (quality rules → `filtered:<rule>`),
language (py3langid), pii (typed placeholders).
"""

from selfsup.clean.filters import quality_reason
from selfsup.clean.language import detect_language
from selfsup.clean.normalise import normalise_text
from selfsup.clean.pii import redact

__all__ = ["normalise_text", "quality_reason", "detect_language", "redact"]
