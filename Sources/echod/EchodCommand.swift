import ArgumentParser
import EchodConfig
import EchodDaemon
import EchodSystem
import FoundationEssentials

/// The command line, and nothing else: every subcommand parses its options and calls the layer that does the work
/// (`run`: EchodDaemon; `check-config`: EchodConfig; `probe`: EchodProbe; `bench`: EchodBench; `stop-hook`:
/// EchodDaemon).
@main
struct Echod: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echod",
        abstract: "A TCP echo server daemon (RFC 862) for Linux, on its own epoll event loop.",
        version: Daemon.version,
        subcommands: [Run.self, CheckConfig.self, ProbeCommand.self, BenchCommand.self, StopHook.self],
        defaultSubcommand: Run.self)
}

/// Options shared by `run` and `check-config`.
struct ConfigOptions: ParsableArguments {
    @Option(
        name: .long, help: ArgumentHelp("Configuration file (default: \(ConfigLoader.defaultPath) when it exists, else embedded defaults).", valueName: "path"))
    var config: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Listen address, HOST:PORT, [IPV6]:PORT, unix:/PATH or unix:@NAME; repeatable; replaces the configured list.", valueName: "host:port"))
    var listen: [String] = []

    @Option(name: .long, help: ArgumentHelp("Event loop threads, or 'auto' (one per CPU).", valueName: "n"))
    var threads: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: ArgumentHelp("text, json, journal or auto.", valueName: "format"))
    var logFormat: String?

    @Option(name: .long, help: ArgumentHelp("Serve the HTTP health and metrics endpoint (/livez, /readyz, /metrics) on HOST:PORT.", valueName: "host:port"))
    var admin: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Started as root: switch to this user and its groups once the listeners are bound and the log file is open.",
            valueName: "name"))
    var user: String?

    @Option(
        name: .long, help: ArgumentHelp("UDP echo address, HOST:PORT or [IPV6]:PORT; repeatable; replaces the configured udp.listen.", valueName: "host:port"))
    var udp: [String] = []

    @Option(
        name: .long,
        help: ArgumentHelp("This echod's name in listener tags ({instance}); an empty name means the host name (the default).", valueName: "name"))
    var instance: String?

    @Option(
        name: .customLong("io-backend"),
        help: ArgumentHelp(
            "What the worker loops wait on: epoll (the default), io_uring (refuse to start where the kernel does not allow it) or auto (io_uring where allowed, else epoll).",
            valueName: "backend"))
    var ioBackend: String?

    var overrides: ConfigOverrides {
        ConfigOverrides(
            listen: listen.isEmpty ? nil : listen, threads: threads, logLevel: logLevel, logFormat: logFormat, adminListen: admin, user: user,
            udpListen: udp.isEmpty ? nil : udp, instance: instance, ioBackend: ioBackend)
    }
}

extension Echod {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Run the daemon in the foreground (the default). SIGTERM/SIGINT drain and stop, SIGHUP reloads the configuration, SIGUSR1 reopens the log file."
        )

        @OptionGroup var options: ConfigOptions

        func run() throws {
            let status = Daemon.run(
                DaemonOptions(
                    configPath: options.config, overrides: options.overrides, environment: ProcessInfo.processInfo.environment))
            if status != 0 { throw ExitCode(status) }
        }
    }

    struct CheckConfig: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-config",
            abstract: "Load and validate the configuration, print the effective values and where each came from; exit 1 on any problem.")

        @OptionGroup var options: ConfigOptions

        func run() throws {
            do throws(ConfigError) {
                let loaded = try ConfigLoader.load(path: options.config, overrides: options.overrides, environment: ProcessInfo.processInfo.environment)
                let rendered = loaded.render()
                writeStdout(rendered.hasSuffix("\n") ? rendered : rendered + "\n")
                for warning in loaded.warnings { writeStderr("warning: \(warning)\n") }
                writeStdout("configuration OK\n")
            } catch {
                for problem in error.problems { writeStderr("error: \(problem)\n") }
                writeStderr("configuration invalid: \(error.problems.count) problem(s)\n")
                throw ExitCode(1)
            }
        }
    }
}

extension Echod {
    struct StopHook: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stop-hook",
            abstract:
                "For the unit's ExecStop=+ (as root): ask systemd whether this stop is a restart and leave the answer in $RUNTIME_DIRECTORY/stop-job, so that echod hands its connections over at a restart and drains them at a stop (restart.keep_connections)."
        )

        func run() throws {
            let status = Daemon.stopHook(environment: ProcessInfo.processInfo.environment)
            if status != 0 { throw ExitCode(status) }
        }
    }
}
