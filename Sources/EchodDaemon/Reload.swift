import EchodConfig
import EchodEcho
import EchodEventLoop
import EchodLog
import EchodSystem
import Logging

/// What the reloads so far came to: counted for /metrics; the last failure is shown in STATUS= until a reload
/// succeeds.
struct ReloadOutcomes {
    var succeeded: UInt64 = 0
    var failed: UInt64 = 0
    var lastFailure: String?

    mutating func failed(because reason: String) {
        failed += 1
        lastFailure = reason
    }
}

extension Daemon {
    /// SIGHUP: re-read the configuration off-loop and apply what can change at run time. An invalid new
    /// configuration changes nothing; no connection is dropped either way.
    func reload() {
        guard lifecycle.reloading() else {
            let reason = lifecycle.phase == .reloading ? "a reload is already in progress" : "not serving"
            logger.notice("reload ignored", metadata: ["reason": .string(reason)])
            return
        }
        logger.info("reloading configuration (SIGHUP)")
        loadConfig { [unowned self] result in self.reloadLoaded(result) }
    }

    private func reloadLoaded(_ result: Result<LoadedConfig, ConfigError>) {
        // A SIGTERM during the reload began the drain: the new configuration is of no use any more.
        guard lifecycle.phase == .reloading else { return }
        switch result {
        case .failure(let error):
            for problem in error.problems {
                logger.error(
                    "reload rejected: invalid configuration; the running configuration stays in force", metadata: ["problem": .string(problem.description)])
            }
            reloads.failed(because: error.problems.first?.description ?? "invalid configuration")
        case .success(let loaded):
            do throws(StartError) {
                try apply(loaded)
                reloads.succeeded += 1
                reloads.lastFailure = nil
                logger.info("configuration reloaded", metadata: ["config": .string(loaded.filePath ?? "embedded defaults")])
            } catch {
                logger.error("reload rejected; the running configuration stays in force", metadata: ["error": .string(error.description)])
                reloads.failed(because: error.description)
            }
        }
        lifecycle.reloaded(status: statusLine())
    }

    /// Applies a validated configuration. Listeners are changed first, since only they can fail the reload (a new
    /// address may not bind; nothing has changed then). The log settings are applied next: a new log file that
    /// cannot be opened is reported and the log stays as it was, while the rest of the reload goes ahead.
    private func apply(_ loaded: LoadedConfig) throws(StartError) {
        let old = config!.settings
        let new = loaded.settings
        // Socket files bound from now on are made as the new unix.* says; the ones kept stay as they are. After a
        // switch to --user, unset owner and group mean that user, which is who creates the files now anyway.
        let unix = try unixFileOptions(new, switchingTo: nil)
        let addedDatagrams = try bindAddedDatagramListeners(old: old, new: new)
        let oldTargets = old.listen.map(\.target)
        let newTargets = new.listen.map(\.target)
        if !socketActivated && newTargets != oldTargets {
            do { try changeListeners(to: newTargets, unix: unix, settings: new) } catch {
                for l in addedDatagrams { Syscall.close(l.fd) }
                throw error
            }
        } else if socketActivated && newTargets != oldTargets {
            logger.notice("listen addresses changed in the file, but the sockets come from systemd: change the .socket unit instead")
        }
        // Options (PROXY protocol, tags) apply to the listeners kept, passed ones too; new connections only.
        if new.listen != old.listen || new.instance != old.instance {
            changePolicies(new)
        }
        if new.threads != old.threads {
            logger.warning(
                "threads changed: takes effect at the next restart",
                metadata: ["running": .stringConvertible(old.threads), "configured": .stringConvertible(new.threads)])
        }
        if new.ioBackend != old.ioBackend {
            logger.warning(
                "io.backend changed: takes effect at the next restart",
                metadata: ["running": .stringConvertible(ioBackend), "configured": .string(new.ioBackend.rawValue)])
        }
        if new.adminListen != old.adminListen {
            logger.warning("admin.listen changed: takes effect at the next restart")
        }
        if new.user != old.user {
            logger.warning("user changed: takes effect at the next restart")
        }
        do { try backend.apply(logOptions(new)) } catch {
            logger.error("log settings not applied", metadata: ["error": .string("\(error)")])
        }
        limiter.setLimits(maxConnections: new.maxConnections, maxPerIP: new.maxConnectionsPerIP)
        let echo = Self.echoSettings(new)
        for w in workers {
            w.loop.execute { w.service?.apply(echo) }
        }
        changeDatagramListeners(added: addedDatagrams, new: new)
        applyKeeping(old: old, new: new)
        storeListeners()
        var kept = loaded
        kept.settings.threads = old.threads
        kept.settings.user = old.user
        kept.settings.ioBackend = old.ioBackend
        config = kept
    }

    /// Binds the added addresses (all or nothing), then has every loop accept on them; the removed ones are
    /// taken out of every loop and closed once all loops have let go. Established connections are untouched.
    private func changeListeners(to addresses: [ListenTarget], unix options: UnixFileOptions, settings: EchodSettings) throws(StartError) {
        let current = Set(listeners.compactMap(\.configured))
        let wanted = Set(addresses)
        let added: [Listener]
        let removed = listeners.filter { $0.configured.map { !wanted.contains($0) } ?? false }
        do throws(ListenerError) {
            let result = try Listeners.bind(addresses.filter { !current.contains($0) }, unix: options)
            if listeners.count - removed.count == 0 { try Listeners.requireSome(result.bound, skipped: result.skipped) }
            logRemovedStale(result.removedStale)
            logSkipped(result.skipped)
            added = result.bound
        } catch {
            throw StartError(description: error.description)
        }
        listeners.removeAll { l in removed.contains { $0.fd == l.fd } }
        listeners.append(contentsOf: added)
        let addedFDs = Set(added.map(\.fd))
        assignPolicies(settings, only: addedFDs)
        let addedListeners = listeners.filter { addedFDs.contains($0.fd) }.map { ($0.fd, $0.policy, $0.policyIndex) }
        for w in workers {
            w.loop.execute { [unowned self] in
                for (fd, policy, index) in addedListeners {
                    do throws(IOError) { try w.addAcceptor(fd, policy: policy, index: index) } catch {
                        self.logger.error("cannot accept on new listener", metadata: ["error": .stringConvertible(error)])
                    }
                }
            }
        }
        if !removed.isEmpty {
            let removedFDs = removed.map(\.fd)
            whenAllLoops({ w in for fd in removedFDs { w.removeAcceptor(fd) } }) { [unowned self] in
                for l in removed { self.closeListener(l) }
            }
        }
        for l in listeners where addedFDs.contains(l.fd) { logger.info("listening", metadata: ["address": .string(l.summary)]) }
        for l in removed { logger.info("stopped listening", metadata: ["address": .string(l.label)]) }
    }

    /// Serves new connections of the listeners whose options changed by their new policy.
    private func changePolicies(_ settings: EchodSettings) {
        let changed = assignPolicies(settings).map { ($0.fd, $0.policy, $0.policyIndex, $0.summary) }
        guard !changed.isEmpty else { return }
        for w in workers {
            w.loop.execute {
                for (fd, policy, index, _) in changed { w.changePolicy(fd, policy: policy, index: index) }
            }
        }
        for (_, _, _, summary) in changed { logger.info("listener options changed", metadata: ["address": .string(summary)]) }
    }
}
