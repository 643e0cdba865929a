"""How user names compare: one rule for every package.

It sits at the top of the package, below nothing, so that crypto (which signs
names inside envelopes), protocol, store and client all share it without
breaking the dependency direction ``commands -> server/client/store ->
protocol -> crypto``.
"""


def name_key(name: str) -> str:
    """The form in which user names compare: ASCII lower case.

    Names are 1-32 of ``[A-Za-z0-9_.-]`` (ASCII only), so ``str.lower`` is the
    whole rule: ``Alice`` and ``alice`` are one account. The spelling on the wire
    is the one the account was registered with; every comparison, lookup and
    signed name goes through this function. A name in lower case already is
    returned itself: a server keeps one string per member, not two.
    """
    return name if name.islower() else name.lower()
