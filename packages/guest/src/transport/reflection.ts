// gRPC server reflection (v1 and v1alpha) over GuestService and health, so grpcurl and
// `buf curl` can list and call the agent with no .proto at hand.
//
// @grpc/reflection parses its own reflection.proto with protobufjs when it is added to a
// server: megabytes of heap and tens of milliseconds of start-up for a service only
// people at a terminal call. So the agent registers the two reflection methods itself,
// passing the raw bytes through, and loads @grpc/reflection on the first call.
import { createRequire } from "node:module";
import { type DescFile, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import type { ReflectionService } from "@grpc/reflection";
import { file_guest_guest, file_health_v1_health } from "@guestkit/protocol";

const VERSIONS = ["grpc.reflection.v1", "grpc.reflection.v1alpha"] as const;
const METHOD = "ServerReflectionInfo";

type ReflectionHandler = grpc.handleBidiStreamingCall<unknown, unknown>;
type Loaded = Map<string, { definition: grpc.MethodDefinition<unknown, unknown>; handler: ReflectionHandler }>;

/** Adds the reflection services to a server; @grpc/reflection itself loads on first use. */
export function addReflection(server: grpc.Server): void {
  let loaded: Loaded | undefined;
  for (const version of VERSIONS) {
    const path = `/${version}.ServerReflection/${METHOD}`;
    const definition: grpc.ServiceDefinition = {
      [METHOD]: {
        path,
        requestStream: true,
        responseStream: true,
        originalName: METHOD,
        requestSerialize: (bytes: Buffer) => bytes,
        requestDeserialize: (bytes: Buffer) => bytes,
        responseSerialize: (bytes: Buffer) => bytes,
        responseDeserialize: (bytes: Buffer) => bytes,
      },
    };
    const handler: grpc.handleBidiStreamingCall<Buffer, Buffer> = (call) => {
      // Synchronous, so no request is read before the real handler listens for it.
      loaded ??= loadReflection();
      const real = loaded.get(path);
      if (!real) {
        call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: `${path} is not served` });
        return;
      }
      real.handler(decodingCall(call, real.definition));
    };
    server.addService(definition, { [METHOD]: handler } as grpc.UntypedServiceImplementation);
  }
}

// The call as @grpc/reflection's handler sees it: messages decoded and encoded with the
// definitions it loaded. It uses only data/end events, write() and end().
function decodingCall(
  call: grpc.ServerDuplexStream<Buffer, Buffer>,
  definition: grpc.MethodDefinition<unknown, unknown>,
): grpc.ServerDuplexStream<unknown, unknown> {
  const view = Object.create(call) as grpc.ServerDuplexStream<unknown, unknown>;
  let failed = false;
  view.on = ((event: string, listener: (...args: unknown[]) => void) => {
    if (event === "data") {
      call.on("data", (bytes: Buffer) => {
        if (failed) return;
        let message: unknown;
        try {
          message = definition.requestDeserialize(bytes);
        } catch {
          // Thrown inside the stream's event emitter it would be the agent's uncaught
          // error: answer as grpc-js does for a request it cannot parse.
          failed = true;
          call.emit("error", { code: grpc.status.INTERNAL, details: "Error deserializing request" });
          return;
        }
        listener(message);
      });
    } else call.on(event, listener);
    return view;
  }) as typeof view.on;
  view.write = ((message: unknown) => call.write(definition.responseSerialize(message))) as typeof view.write;
  view.end = (() => {
    call.end();
    return view;
  }) as typeof view.end;
  return view;
}

function loadReflection(): Loaded {
  const { ReflectionService: Service } = createRequire(import.meta.url)("@grpc/reflection") as {
    ReflectionService: typeof ReflectionService;
  };
  const packages = {
    "guest.GuestService": { fileDescriptorProtos: generatedFileProtos(file_guest_guest) },
    "grpc.health.v1.Health": { fileDescriptorProtos: generatedFileProtos(file_health_v1_health) },
  };
  const loaded: Loaded = new Map();
  // It adds its services to whatever it is given: collect them instead.
  const collector = {
    addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) {
      for (const [name, definition] of Object.entries(service)) {
        loaded.set(definition.path, {
          definition: definition as grpc.MethodDefinition<unknown, unknown>,
          handler: implementation[name] as ReflectionHandler,
        });
      }
    },
  };
  new Service(packages as unknown as ConstructorParameters<typeof ReflectionService>[0]).addToServer(
    collector as unknown as grpc.Server,
  );
  return loaded;
}

// The generated file and everything it imports, serialized as reflection sends them.
function generatedFileProtos(file: DescFile): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  const visit = (f: DescFile): void => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    for (const dependency of f.dependencies) visit(dependency);
    out.push(Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  };
  visit(file);
  return out;
}
