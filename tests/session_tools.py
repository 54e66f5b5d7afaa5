"""The tools the session and journal tests call: each counts its calls at the handler (exactly once is the point)."""

import asyncio
from collections import Counter

from ptc import Policy, ToolCatalog, ToolError

CALLS: Counter[str] = Counter()


def shop(source: str = "sessions-test") -> ToolCatalog:
    catalog = ToolCatalog(source=source)

    @catalog.tool(domain="shop")
    async def price(sku: str) -> float:
        """The price of a sku."""
        CALLS["price"] += 1
        await asyncio.sleep(0.002 if sku == "A1" else 0.02)  # B2 comes back after A1 under gather
        return {"A1": 3.5, "B2": 12.0}.get(sku, 1.0)

    @catalog.tool(domain="shop", policy=Policy(inline=True))
    def stock(sku: str) -> int:
        """Units in stock (inline: answered at submit)."""
        CALLS["stock"] += 1
        return 7

    @catalog.tool(domain="shop")
    def label(sku: str) -> str:
        """A label (sync, on the tool threads)."""
        CALLS["label"] += 1
        return f"<{sku}>"

    @catalog.tool(domain="shop")
    def refund(order: str) -> str:
        """Refund an order (sync, on the tool threads)."""
        CALLS["refund"] += 1
        if order == "bad":
            raise ToolError("no such order")
        return f"refunded {order}"

    return catalog
