"""What every HTTP edge shares, beside ``suppression`` (neither imports the other) and below every
context that answers a request.

``http`` (the one code-to-status map and the error bodies), ``forms`` (urlencoded and multipart
bodies), ``pages`` (the HTML pages and their wording).
"""
