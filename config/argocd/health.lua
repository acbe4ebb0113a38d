-- Argo CD health check for agents.kruise.io SandboxSets. It reads the
-- conditions the way kstatus (Flux) does, so both tools agree:
--   the controller has not seen the latest spec  -> Progressing
--   Stalled=True (quota, Pod Security, admission refusal, no node fits)
--                                                 -> Degraded
--   Reconciling=True (filling, rolling out)       -> Progressing
--   Ready=True (every sandbox available)          -> Healthy
-- Argo CD runs custom health checks without Lua's string library, so this
-- uses only the base library. docs/health.md explains the conditions.
local status = obj.status or {}
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  return {status = "Progressing", message = "Waiting for the SandboxSet controller to observe generation " .. tostring(generation)}
end

-- isTrue returns the condition of this type if it is True.
local function isTrue(conditionType)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == conditionType and c.status == "True" then
      return c
    end
  end
  return nil
end

local stalled = isTrue("Stalled")
if stalled ~= nil then
  return {status = "Degraded", message = stalled.message}
end
local reconciling = isTrue("Reconciling")
if reconciling ~= nil then
  return {status = "Progressing", message = reconciling.message}
end
local ready = isTrue("Ready")
if ready ~= nil then
  return {status = "Healthy", message = ready.message}
end
return {status = "Progressing", message = "Waiting for the SandboxSet controller to report the pool Ready"}
