"""What the source asks an OPC UA server for, built from the config: monitored items (sampling
interval, queue size, deadband) and the nodes' engineering units. With `source` and `connect`,
the only modules of the source that import asyncua.
"""

from __future__ import annotations

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds

from agent.sources.opcua.config import OpcuaSourceConfig


def monitored_item(config: OpcuaSourceConfig, i: int, node: Node) -> ua.MonitoredItemCreateRequest:
    """The monitored item for node `i` of the config; its client handle is `i + 1`."""
    spec = config.nodes[i]
    params = ua.MonitoringParameters()
    params.ClientHandle = i + 1
    sampling = spec.sampling_interval_ms
    params.SamplingInterval = float(config.sampling_interval_ms if sampling is None else sampling)
    params.QueueSize = config.queue_size if spec.queue_size is None else spec.queue_size
    params.DiscardOldest = True
    deadband = config.deadband_abs if spec.deadband_abs is None else spec.deadband_abs
    if deadband > 0:
        flt = ua.DataChangeFilter()
        flt.Trigger = ua.DataChangeTrigger.StatusValue
        flt.DeadbandType = ua.DeadbandType.Absolute
        flt.DeadbandValue = deadband
        params.Filter = flt
    item = ua.ReadValueId()
    item.NodeId = node.nodeid
    item.AttributeId = AttributeIds.Value
    request = ua.MonitoredItemCreateRequest()
    request.ItemToMonitor = item
    request.MonitoringMode = ua.MonitoringMode.Reporting
    request.RequestedParameters = params
    return request


async def engineering_units(client: Client, nodes: dict[int, Node]) -> dict[int, str]:
    """The DisplayName of each node's EngineeringUnits property (EUInformation), where it
    has one: two requests for all nodes, whatever their number."""
    if not nodes:
        return {}
    order = sorted(nodes)
    paths = []
    for i in order:
        path = ua.BrowsePath()
        path.StartingNode = nodes[i].nodeid
        path.RelativePath = ua.RelativePath.from_string("/0:EngineeringUnits")
        paths.append(path)
    results = await client.uaclient.translate_browsepaths_to_nodeids(paths)
    props = {
        i: client.get_node(r.Targets[0].TargetId)
        for i, r in zip(order, results, strict=True)
        if r.StatusCode.is_good() and r.Targets
    }
    if not props:
        return {}
    values = await client.read_attributes([props[i] for i in sorted(props)])
    units: dict[int, str] = {}
    for i, value in zip(sorted(props), values, strict=True):
        eu = value.Value.Value if value.Value is not None else None
        text = getattr(getattr(eu, "DisplayName", None), "Text", None)
        if isinstance(text, str):
            units[i] = text
    return units
