import ArgumentParser
import ScoutBlockIO
import ScoutStorage
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `scoutfs print [-S] META-DEV`: prints every metadata structure of a meta device in the
/// original's format (`utils/src/print.c`).
struct PrintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "print",
        abstract: "Print metadata structures",
        usage: "scoutfs print [--skip-likely-huge] META-DEV"
    )

    @Flag(name: [.customShort("S"), .customLong("skip-likely-huge")], help: "Skip large structures to minimize output size")
    var skipLikelyHuge = false

    // Optional to the parser, so that the original's own messages for none or several
    // devices can be given.
    @Argument(help: ArgumentHelp("The metadata device [Required]", valueName: "META-DEV"))
    var device: String?

    @Argument(help: .hidden)
    var extraDevices: [String] = []

    var devices: [String] { [device].compactMap { $0 } + extraDevices }

    func validate() throws {
        if devices.isEmpty { throw ValidationError("no metadata device argument given") }
        if devices.count > 1 { throw ValidationError("more than one argument given") }
    }

    func run() throws {
        var out = FileDescriptorOutputStream(fd: STDOUT_FILENO, bufferLimit: 1 << 16)
        var err = FileDescriptorOutputStream(fd: STDERR_FILENO, bufferLimit: 0)
        let code = Self.execute(path: devices[0], options: PrintOptions(skipLikelyHuge: skipLikelyHuge), output: &out, diagnostics: &err)
        out.flush()
        if code != 0 { throw ExitCode(code) }
    }

    /// Opens and prints the device (`do_print` and `cmd_execute`'s failure message); returns the
    /// exit status: 0, or 1 with `scoutfs: print failed: …` on stderr (after what the printer
    /// said about it).
    static func execute<O: TextOutputStream, E: TextOutputStream>(
        path: String, options: PrintOptions, output: inout O, diagnostics: inout E
    ) -> Int32 {
        func failed(_ code: Int32) -> Int32 {
            diagnostics.write("scoutfs: print failed: \(Printer<FileBlockDevice, O, E>.errorString(code)) (\(code))\n")
            return 1
        }

        let device: FileBlockDevice
        do {
            device = try FileBlockDevice(path: path, writable: false)
        } catch {
            // one error, one line (the original prints the open failure on a line of its own first)
            diagnostics.write(failureLine("print", error.rawValue, detail: "cannot open '\(path)'") + "\n")
            return 1
        }
        // flush_device: drop cached pages of a device file so the reads see what is on disk
        _ = posix_fadvise(device.fd.rawValue, 0, off_t(clamping: device.size), POSIX_FADV_DONTNEED)

        var printer = Printer(device: device, options: options, output: output, diagnostics: diagnostics)
        let outcome = printer.printVolume()
        output = printer.output
        diagnostics = printer.diagnostics

        if outcome.error == nil, !outcome.corruptBlocks.isEmpty {
            diagnostics.write("corrupt blocks: \(outcome.corruptBlocks.map(String.init).joined(separator: " "))\n")
        }
        if let code = outcome.exitErrno { return failed(code) }
        return 0
    }
}

/// A `TextOutputStream` onto a file descriptor, buffered up to `bufferLimit` bytes.
struct FileDescriptorOutputStream: TextOutputStream {
    let fd: Int32
    let bufferLimit: Int
    var buffer: [UInt8] = []

    init(fd: Int32, bufferLimit: Int) {
        self.fd = fd
        self.bufferLimit = bufferLimit
    }

    mutating func write(_ string: String) {
        buffer.append(contentsOf: string.utf8)
        if buffer.count >= bufferLimit { flush() }
    }

    mutating func flush() {
        var done = 0
        buffer.withUnsafeBytes { raw in
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                done += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
